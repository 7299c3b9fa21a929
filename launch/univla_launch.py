"""What arm.launch.py and nav.launch.py share: the launch arguments and the launch_ros Node."""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'univla_ros'

# Per node: executable, default params file, and the topics remapped from launch arguments
# (node-relative topic -> (argument, default, description)).
ROBOTS = {
    'arm': {
        'executable': 'univla_arm',
        'config': 'piper_realworld.yaml',
        'config_help': 'ROS parameters file (config/piper_realworld.yaml or config/libero_eef.yaml)',
        'remaps': {
            'joint_states': ('joint_states_topic', '/joint_states', 'joint states topic'),
            'joint_trajectory': ('trajectory_topic', '/arm_controller/joint_trajectory',
                                 'JointTrajectory output topic'),
        },
    },
    'nav': {
        'executable': 'univla_nav',
        'config': 'r2r_base.yaml',
        'config_help': 'ROS parameters file (config/r2r_base.yaml)',
        'remaps': {
            'cmd_vel': ('cmd_vel_topic', '/cmd_vel', 'velocity output topic'),
        },
    },
}


def _arguments(robot):
    spec = ROBOTS[robot]
    common = {
        'params_file': (PathJoinSubstitution([FindPackageShare(PACKAGE), 'config', spec['config']]),
                        spec['config_help']),
        'namespace': ('', 'node namespace'),
        'node_name': (spec['executable'], 'node name'),
        'checkpoint': ('', 'checkpoint directory (overrides the params file when set)'),
        'image_topic': ('/camera/color/image_raw', 'camera topic (remapped onto image_raw)'),
        'use_sim_time': ('false', 'follow /clock'),
        'dry_run': ('false', 'publish everything except actuator commands'),
    }
    for arg, default, help_text in spec['remaps'].values():
        common[arg] = (default, help_text)
    return common


def _node(context, robot):
    spec = ROBOTS[robot]

    def get(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {'use_sim_time': get('use_sim_time') == 'true', 'dry_run': get('dry_run') == 'true'}
    if get('checkpoint'):
        overrides['checkpoint'] = get('checkpoint')
    remaps = [('image_raw', get('image_topic'))]
    remaps += [(topic, get(arg)) for topic, (arg, _, _) in spec['remaps'].items()]
    return [Node(
        package=PACKAGE,
        executable=spec['executable'],
        name=get('node_name'),
        namespace=get('namespace'),
        output='screen',
        emulate_tty=True,
        parameters=[get('params_file'), overrides],
        remappings=remaps,
    )]


def robot_launch(robot):
    """The launch description of `robot` ('arm' or 'nav')."""
    return LaunchDescription(
        [DeclareLaunchArgument(k, default_value=v, description=d) for k, (v, d) in _arguments(robot).items()]
        + [OpaqueFunction(function=_node, args=[robot])])
